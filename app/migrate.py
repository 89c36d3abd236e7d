"""Running the Alembic revisions programmatically (``certpost migrate``, start-up, tests).

Alembic logs a dozen INFO lines on every run ("Context impl SQLiteImpl.", "Will assume
non-transactional DDL.", one per revision), which every CLI command used to print (issue 9).
Here they are collected instead of shown, and one line says what changed, only when a revision
actually ran; warnings and errors still pass.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from importlib import resources

log = logging.getLogger("certpost.migrate")
_ALEMBIC = "alembic"


def alembic_config(database_url: str):
    with _quiet_alembic():  # Alembic logs its plugins at INFO when first imported
        from alembic.config import Config
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


class _Revisions(logging.Handler):
    """Keeps the steps of Alembic's "Running %s" records (a MigrationStep: from_revisions,
    to_revisions) and its warnings; drops the rest of its INFO chatter."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: list[tuple[str | None, str]] = []
        self.passed: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        step = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if record.msg == "Running %s" and hasattr(step, "to_revisions"):
            before, after = tuple(step.from_revisions), tuple(step.to_revisions)
            self.steps.append((",".join(before) or None, ",".join(after) or "base"))
        elif record.levelno >= logging.WARNING:
            self.passed.append(record)


@contextmanager
def _quiet_alembic():
    logger = logging.getLogger(_ALEMBIC)
    saved = logger.level, logger.propagate, list(logger.handlers)
    revisions = _Revisions()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers = [revisions]
    try:
        yield revisions
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers = saved[2]
        for record in revisions.passed:  # Alembic's warnings and errors, as if never caught
            logger.handle(record)


def _say(steps: list[tuple[str | None, str]], verb: str) -> None:
    if steps:
        first, last = steps[0][0], steps[-1][1]
        count = f"{len(steps)} revision{'s' if len(steps) > 1 else ''}"
        log.info("database %s from %s to %s (%s)", verb, first or "empty", last, count)


def upgrade(database_url: str, revision: str = "head") -> None:
    with _quiet_alembic() as revisions:
        from alembic import command

        command.upgrade(alembic_config(database_url), revision)
    _say(revisions.steps, "upgraded")


def downgrade(database_url: str, revision: str) -> None:
    with _quiet_alembic() as revisions:
        from alembic import command

        command.downgrade(alembic_config(database_url), revision)
    _say(revisions.steps, "downgraded")
