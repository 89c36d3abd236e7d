"""Schema pieces shared by every feature."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class WarningOut(BaseModel):
    code: str
    message: str
