"""The loop's timer grain: what "due" means to code that paces work on the loop's clock.

uvloop (what the generator runs) keeps its clock in whole milliseconds, read once a turn,
and rounds a timer's delay to the millisecond: a timer set for less than half a
millisecond ahead runs in the very next turn, when the clock still reads the same. Work
that re-arms a timer until its item is due therefore spins through empty turns for up to
a millisecond before every item: measured, the handshake pace ran ~130 k empty turns in a
restart of 500 clients (a fifth of the profile) and spawning ran 15 k turns to start 100
users over a second (one turn per user on asyncio's nanosecond clock). So an item due
within :data:`TIMER_GRAIN_S` is due now: it runs up to a millisecond early, and a pace
keeps its rate on average by counting it at its due time.
"""

from __future__ import annotations

__all__ = ["TIMER_GRAIN_S"]

TIMER_GRAIN_S = 0.001
