"""Expiry notices: events before a bound certificate that will not be renewed in time expires."""
