"""``loadsvc serve``: the always-on soak service.

:mod:`.scheduler` knows triggers; :mod:`.supervisor` owns runs; :mod:`.records`
turns finished runs into history records and log lines; :mod:`.history` keeps
them; :mod:`.status` writes the status document; :mod:`.app` wires them into
the in-process service; :mod:`.settings` reads flags and the environment.
:mod:`.http` (the HTTP surface) and :mod:`.signals` (the signal loop) serve both
it and the ``--workers`` front (:mod:`.front`), which runs :mod:`.workers` (the
process pool) and merges their answers with :mod:`.merge`.
"""

from loadsvc.service.app import SoakService, run_serve, serve
from loadsvc.service.history import RunHistory
from loadsvc.service.scheduler import ScenarioScheduler, next_fire_time
from loadsvc.service.settings import ServeRequest, ServeSettings
from loadsvc.service.supervisor import RestartBackoff, Supervisor

__all__ = [
    "RestartBackoff",
    "RunHistory",
    "ScenarioScheduler",
    "ServeRequest",
    "ServeSettings",
    "SoakService",
    "Supervisor",
    "next_fire_time",
    "run_serve",
    "serve",
]
