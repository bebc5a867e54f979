"""State and actions of the analyst dashboard: ``param.Parameterized`` classes without panel.

Every class here holds what one dashboard session needs — filters, a grid page paged in SQL
with its selection kept as ids (or as the filter itself for "select all"), the Release and
Invoice flow with its warning and progress, run records, documents, settings and rules,
in-app notifications — and talks to the core only through the ``Workspace``. Views bind to
these parameters and call these methods; they never hold SQL. The classes are unit-tested
without a browser (``tests/test_ui_state.py``) and driven by ``bench/bench_ui.py``.

Threading: the methods are synchronous. Sessions may call them from any thread; every read
goes through ``ws.db.cursor()``, which is per thread. Slow work (eligibility of a whole kind
after the data changed, a large preview, downloads) is exposed as separate methods so a view
can run it off the event loop.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing Any, TYPE_CHECKING
