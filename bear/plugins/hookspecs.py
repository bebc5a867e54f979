"""Hook specifications for plugins' own settings and for notifications (pluggy project
``bear``).

Notifiers are called after the work they report has been committed, once per outbox entry;
a notifier that raises leaves its entry in the outbox to be retried, and never undoes a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bear.config import PluginSetting
from bear.markers import hookspec
from bear.models import NotifierOptions, RunSummary


@hookspec
def bear_register_settings() -> Iterable[PluginSetting]:
    """Declare the settings this plugin reads. Called once when the plugins are loaded, before
    ``bear_register_rules``.

    Each is stored as ``<plugin name>.<name>`` (the plugin name is its entry-point name),
    validated, recorded and edited like BEAR's own settings (``bear settings set``, the
    dashboard, ``ws.settings.update_by``), and read by the plugin's rules as
    ``settings["<plugin name>.<name>"]``. A bad declaration (an unknown type, a default it
    does not allow, a name given twice) is an error naming the plugin.

    :returns: a list of ``bear.PluginSetting`` (name, kind, default, help, and optionally
        minimum, maximum, choices, affects_rules).
    """


@hookspec
def bear_notifier_options() -> NotifierOptions:
    """How the outbox should treat this plugin's notifications.

    Optional: a notifier without it is owed one delivery per notification. Return
    ``NotifierOptions(per_recipient=True)`` to be owed one delivery per recipient, each retried
    on its own (the e-mail notifier does).

    :returns: a ``bear.models.NotifierOptions``.
    """


@hookspec
def bear_send_test_notification(settings: Any, recipient: str) -> str:
    """Send a test message through this channel now (the dashboard's *Send test* button,
    ``ws.send_test_notification``). Raise to report that it could not be sent.

    :param settings: the current ``bear.config.SettingsSnapshot`` (e.g. the SMTP host).
    :param recipient: the address to send the test message to.
    :returns: one line saying what was sent, for the person who asked.
    """


@hookspec
def bear_release_finished(summary: RunSummary) -> None:
    """The release stage of a run has finished.

    :param summary: the run's counts (released, not released, batches, failed batches), its
        user, the dashboard link and the recipients this delivery is for.
    """


@hookspec
def bear_invoicing_finished(summary: RunSummary) -> None:
    """The invoicing stage of a run has finished.

    :param summary: the run's counts (sales invoices, credit notes, events not passed to
        accounting), its process run id, the dashboard link and the recipients this
        delivery is for.
    """


@hookspec
def bear_run_failed(summary: RunSummary, error: str) -> None:
    """A run stopped on an unexpected error (its committed batches stay committed).

    :param summary: the run's counts at the time it failed.
    :param error: what went wrong, in one line.
    """
