"""``loadsvc serve``: the always-on soak service.

:mod:`.scheduler` knows triggers; :mod:`.supervisor` owns runs; :mod:`.records`
turns finished runs into history records and log lines; :mod:`.history` keeps
them; :mod:`.http` is the HTTP surface; :mod:`.app` wires them together with
signals and reload; :mod:`.settings` reads flags and the environment.
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
