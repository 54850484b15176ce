"""What really happened in a simulated run, what the bot recorded, and the score of one against the other.

`Outcome` holds the truth (`TrueJoin`: which invite each member really used) beside the log the bot wrote;
`Score` counts right, wrong and missing credits, and the oracle: what the invite counts allowed at best.
Separate from the simulator (`sim.py`): scoring reads a finished run and plays nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from datetime import datetime

import attrs

from service.records import JoinRecorded, Record


@attrs.frozen
class TrueJoin:
    user_id: str
    joined_at: datetime
    code: str | None  # None: no invite (discovery, bot); VANITY for the vanity URL
    staff_id: str | None
    t: float = 0.0  # when, on the bot's clock
    bot: bool = False


@attrs.frozen
class Outcome:
    truth: tuple[TrueJoin, ...]
    joins: tuple[JoinRecorded, ...]
    records: tuple[Record, ...]
    core_seconds: float  # time spent inside Attributor.handle
    served: tuple[float, ...] = ()  # when Discord counted the invites of each fetch the bot got back
    # code -> when it left the lists: by hand or expiry (hidden), or at its last use (used_up)
    hidden: dict[str, float] = attrs.field(factory=dict)
    used_up: dict[str, float] = attrs.field(factory=dict)
    audited: frozenset[str] = frozenset()  # deleted by hand, and the audit log entry reached the bot

    def oracle_right(self) -> int:
        """Staffed joins an oracle could credit from the same information, knowing exactly which fetch
        counted which join: those whose stretch between two counts holds no other human join with another
        source, and whose use shows in some count: the invite is still listed at the count closing the
        stretch, or its final count reached the bot in an audit log entry (deleted by hand), or it was used
        up by this one join (expired, deleted by hand without an entry reaching the bot, or used up by
        several joins in one stretch: such an invite's last uses show in no count).
        """
        cuts = sorted(self.served)
        groups: dict[int, list[str | None]] = {}
        for true in self.truth:
            if not true.bot:
                groups.setdefault(bisect.bisect_left(cuts, true.t), []).append(true.code)

        def credited(true: TrueJoin) -> bool:
            k = bisect.bisect_left(cuts, true.t)
            if true.staff_id is None or k == len(cuts) or set(groups[k]) != {true.code}:
                return False
            code = true.code or ""
            if self.hidden.get(code, math.inf) <= cuts[k] and code not in self.audited:
                return False
            return self.used_up.get(code, math.inf) > cuts[k] or groups[k].count(code) == 1

        return sum(1 for true in self.truth if credited(true))

    def score(self) -> Score:
        by_key: dict[tuple[str, datetime], list[JoinRecorded]] = {}
        for record in self.joins:
            by_key.setdefault((record.user_id, record.timestamp), []).append(record)
        truth = {(t.user_id, t.joined_at): t for t in self.truth}
        missing = [key for key in truth if key not in by_key]
        repeated = [key for key, records in by_key.items() if len(records) > 1]
        invented = [key for key in by_key if key not in truth]
        credited = wrong = right = 0
        for key, records in by_key.items():
            true = truth.get(key)
            for record in records:
                if record.staff_id is None:
                    continue
                credited += 1
                if true is None or record.staff_id != true.staff_id or record.invite_code != true.code:
                    wrong += 1
                else:
                    right += 1
        staffed = sum(1 for t in self.truth if t.staff_id is not None)
        return Score(
            joins=len(self.truth),
            staffed=staffed,
            credited=credited,
            wrong=wrong,
            right=right,
            oracle=self.oracle_right(),
            missing=len(missing),
            repeated=len(repeated),
            invented=len(invented),
            kinds=Counter(str(r.kind) for r in self.joins),
            core_seconds=self.core_seconds,
        )


@attrs.frozen
class Score:
    joins: int
    staffed: int  # joins through an invite that has a staff member
    credited: int  # records that credit a staff member
    wrong: int  # ... to the wrong one (or the wrong invite)
    right: int
    oracle: int  # staffed joins an oracle knowing which fetch counted which join could credit
    missing: int  # joins without a record
    repeated: int  # joins with more than one record
    invented: int  # records for joins that never happened
    kinds: Counter[str]
    core_seconds: float

    @property
    def precision(self) -> float:
        return 1.0 if self.credited == 0 else self.right / self.credited

    @property
    def recall(self) -> float:
        return 1.0 if self.staffed == 0 else self.right / self.staffed

    @property
    def oracle_recall(self) -> float:
        return 1.0 if self.staffed == 0 else self.oracle / self.staffed
