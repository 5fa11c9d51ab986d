"""The Redis store's job queue (mixed into ``RedisStore``).

Keys (P = the prefix)::

    P:job:{id}                 job doc
    P:jobs:ready / :leased     zsets, score = run_at / lease_until in ms
    P:jobs:dead                zset 0, job ids (lex)
    P:jobs:parked:{kind}       zset, score = when the job fell due: due jobs a worker set
                               aside for want of a handler of their kind (doc unchanged)
    P:jobs:parked              set of the kinds that ever had a parked job
    P:jobs:bell                list: the job bell, one entry per ring (at most BELL_MAX);
                               an idle worker of any process takes one with BLPOP

Every change is a compare-and-set of the job's doc (``save_job``, ``park_job``), so two
workers never lease one job. A leaser first claims the due jobs (``claim_jobs`` moves
them to the leased index until its lease would end), so leasers in several processes
take different jobs instead of racing for the earliest ones; then each lease is one CAS,
all in one round trip. The claim also says whether more were due than it took, so an idle
worker's lease of the one job just enqueued is one claim, not a second, empty one. The
messages the leased jobs name (``payload["message_id"]``) are read in the leases' round
trip, for their handlers' first look (``message_of_job``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import jsoncodec
from gateway.models import Job, Message, to_ms
from gateway.store import rules
from gateway.store.event_waiters import Announcements, RedisEventWaiter
from gateway.store.redis_shared import RedisCoordination

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway.store.redis_backend import RedisBackend

CAS_TRIES = 1000  # each failed compare-and-set means another caller made progress
JOB_STATES = ("ready", "leased", "dead")
_SCAN = 500  # ids read per round when a listing filters by kind
DOCS_KEPT = 4096  # docs this process last wrote, kept for its next compare-and-set
LEASE_READS_KEPT = 256  # messages read with leases, not yet taken by their handlers
# Rings kept waiting at most: each wakes one idle worker (which then leases a whole
# batch), so a few are enough, and a bell nobody listens to (API-only) stays small.
BELL_MAX = 8
V = TypeVar("V")


def _keep(kept: OrderedDict[str, V], key: str, value: V, most: int) -> None:
    """Put ``key`` in ``kept`` as its newest entry, dropping the oldest beyond ``most``."""
    kept[key] = value
    kept.move_to_end(key)
    if len(kept) > most:
        kept.popitem(last=False)


def text(value: object) -> str:
    """A reply as text: decode_responses=True hands back str; redis-py's types also
    allow bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def job_slot(job: Job) -> tuple[str, int]:
    """The index a job belongs in, and its score there."""
    if job.state == "leased" and job.lease_until is not None:
        return "leased", to_ms(job.lease_until)
    if job.state == "dead":
        return "dead", 0
    return "ready", to_ms(job.run_at)


class RedisJobs:
    """The job methods of ``RedisStore``."""

    # Every process on this Redis shares the queue: the job bell wakes their workers.
    shared = True
    _bell_state = 0  # 0: no ring on its way; 1: one is; 2: and another asked meanwhile

    if TYPE_CHECKING:  # RedisStore's plumbing

        @property
        def _r(self) -> aioredis.Redis: ...

        def _k(self, *parts: str) -> str: ...

        async def _run(self, name: str, keys: list[str], args: list[str | int]) -> Any: ...

        async def _run_batched(self, name: str, keys: list[str], args: list[str | int]) -> Any: ...

        @property
        def backend(self) -> RedisBackend: ...

        async def get_message(self, message_id: str) -> Message | None: ...

    # -- the docs this process last read or wrote -----------------------------------------
    # A compare-and-set needs the doc as stored; the send path reads a message (and its
    # job) and writes it again a moment later, several times per message. The doc it
    # wrote last is kept here and tried first: a stale one (another process wrote since)
    # makes the script refuse, and the doc is read again. Decisions that must see the
    # store as it is (get_message, get_job) always read it.
    _docs: OrderedDict[str, str] | None = None

    def _remember(self, key: str, raw: str | None) -> None:
        docs = self._docs
        if docs is None:
            docs = self._docs = OrderedDict()
        if raw is None:
            docs.pop(key, None)
            return
        _keep(docs, key, raw, DOCS_KEPT)

    def _known(self, key: str) -> str | None:
        return self._docs.get(key) if self._docs is not None else None

    # -- the messages of the jobs just leased (``message_of_job``) ----------------------
    # Read in the lease's round trip, behind its compare-and-sets; taken (once) by the
    # handler as its task starts, one loop tick later. Bounded: a handler that does not
    # ask (a kind whose job names a message but reads it otherwise) leaves its entry.
    _lease_reads: OrderedDict[str, str | None] | None = None

    def _keep_lease_read(self, job_id: str, raw: str | None) -> None:
        reads = self._lease_reads
        if reads is None:
            reads = self._lease_reads = OrderedDict()
        _keep(reads, job_id, raw, LEASE_READS_KEPT)

    async def message_of_job(self, job: Job) -> Message | None:
        """The message ``job`` is about, as read with its lease (else read now)."""
        message_id = str(job.payload.get("message_id"))
        reads = self._lease_reads
        if reads is None or job.id not in reads:
            return await self.get_message(message_id)
        raw = reads.pop(job.id)
        self._remember(self._k("msg", message_id), raw)  # the update that follows tries it
        return Message.from_dict(jsoncodec.loads(raw)) if raw is not None else None

    # -- reads on the lane (the send path's: no connection checkout, shared round trip) --
    async def _read(self, key: str) -> str | None:
        """GET ``key`` in this tick's pipelined batch."""
        raw = await self._run_batched("read_get", [key], [])
        return None if raw is None else text(raw)

    async def _read_many(self, keys: list[str]) -> list[str | None]:
        """MGET ``keys`` in this tick's pipelined batch."""
        raws = await self._run_batched("read_mget", keys, [])
        return [None if raw is None else text(raw) for raw in raws]

    # -- the job bell --------------------------------------------------------------------
    def ring_job_bell(self) -> None:
        """One ring in this tick's pipelined batch (after the writes already in it, so
        the job is stored when a worker wakes); while a ring is on its way, further
        rings are folded into one more sent after it."""
        if self._bell_state:
            self._bell_state = 2
            return
        self._bell_state = 1
        try:
            done = self.backend.lane.post("ring_job_bell", [self._k("jobs", "bell")], [BELL_MAX])
        except RuntimeError:  # the store is closed (or no loop runs): nobody to wake
            self._bell_state = 0
            return
        done.add_done_callback(self._rang)

    def _rang(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled():
            done.exception()  # a lost ring only delays a worker until it polls
        again = self._bell_state == 2
        self._bell_state = 0
        if again:
            self.ring_job_bell()

    _announcements: Announcements | None = None

    def event_waiter(self) -> RedisEventWaiter:
        """Woken by every process's appends (``event_waiters.py``)."""
        if self._announcements is None:
            self._announcements = Announcements(self.backend)
        return RedisEventWaiter(self._announcements)

    _coordination: RedisCoordination | None = None

    def coordination(self) -> RedisCoordination:
        """Shared by every process on this Redis (``redis_shared.py``)."""
        if self._coordination is None:
            self._coordination = RedisCoordination(self.backend)
        return self._coordination

    async def wait_job_bell(self, timeout: float) -> bool:
        """Take one ring (BLPOP), waiting up to ``timeout`` seconds."""
        return await self._r.blpop([self._k("jobs", "bell")], timeout) is not None

    def _parked(self, kind: str) -> str:
        return self._k("jobs", "parked", kind)

    async def _save_job(
        self, raw: str, job: Job | None, job_id: str, kind: str, batched: bool = False
    ) -> bool:
        """Compare-and-set: write ``job`` (None deletes it) if its doc is still ``raw``
        (``batched``: in this tick's pipeline, see ``_run_batched``)."""
        state, score = job_slot(job) if job else ("ready", 0)
        keys = [
            self._k("job", job_id),
            *(self._k("jobs", s) for s in JOB_STATES),
            self._parked(kind),
        ]
        doc = jsoncodec.dumps(job.to_dict()) if job else ""
        run = self._run_batched if batched else self._run
        saved = bool(await run("save_job", keys, [raw, doc, job_id, state, score]))
        self._remember(keys[0], doc or None if saved else None)
        return saved

    async def _park(self, raw: str, job: Job, score: int) -> bool:
        keys = [
            self._k("job", job.id),
            self._k("jobs", "ready"),
            self._k("jobs", "leased"),
            self._parked(job.kind),
            self._k("jobs", "parked"),
        ]
        return bool(await self._run_batched("park_job", keys, [raw, job.id, score, job.kind]))

    async def enqueue(self, job: Job) -> None:
        """Add a ready job."""
        state, score = job_slot(job)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self._k("job", job.id), jsoncodec.dumps(job.to_dict()))
            pipe.zadd(self._k("jobs", state), {job.id: score})
            await pipe.execute()

    async def _parked_kinds(self) -> list[str]:
        return sorted(text(k) for k in await self._r.smembers(self._k("jobs", "parked")))

    async def _claim(
        self, now_ms: int, limit: int, until_ms: int, kinds: Collection[str] | None
    ) -> tuple[bool, list[tuple[str, str]]]:
        """``(id, doc)`` of up to ``limit`` due jobs, expired leases and parked jobs of
        ``kinds`` (None: every kind), earliest first, claimed for this leaser until
        ``until_ms`` (``claim_jobs``): no other leaser is handed them meanwhile; and
        whether more were due than it took."""
        parked = sorted(kinds) if kinds is not None else await self._parked_kinds()
        keys = [self._k("jobs", "ready"), self._k("jobs", "leased")]
        keys += [self._parked(kind) for kind in parked]
        found = await self._run_batched("claim_jobs", keys,
                                        [now_ms, limit, until_ms, self._k("job", "")])
        pairs = [(text(found[i]), text(found[i + 1])) for i in range(1, len(found), 2)]
        return int(found[0]) == 1, pairs

    async def lease_job(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        *,
        kinds: Collection[str] | None = None,
    ) -> Job | None:
        """Lease the earliest due job of ``kinds`` (or one whose lease expired); bury
        exhausted ones."""
        jobs = await self.lease_jobs(now, owner, visibility, 1, kinds=kinds)
        return jobs[0] if jobs else None

    async def lease_jobs(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        limit: int,
        *,
        kinds: Collection[str] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs of ``kinds`` (and expired leases), earliest
        first; bury exhausted ones, park due jobs of other kinds. One script claims the
        due jobs for this leaser, then each job's lease is a compare-and-set of its doc
        (all in one round trip): a job changed meanwhile by someone else is skipped."""
        now_ms = to_ms(now)
        until_ms = to_ms(now + visibility)
        leased: list[Job] = []
        more = True
        # Claimed again only while more were due than a claim took (some of them parked
        # or lost to another writer): the usual lease is one claim, then the writes.
        while more and len(leased) < limit:
            more, claimed = await self._claim(now_ms, limit - len(leased), until_ms, kinds)
            tries: list[tuple[str, Job, bool]] = []
            other: list[Awaitable[object]] = []
            for _, raw in claimed:
                job = Job.from_dict(jsoncodec.loads(raw))
                state, score = job_slot(job)
                if state == "dead" or score > now_ms:
                    # Not due by its doc after all (a claim left by a leaser that died,
                    # then the job moved): its doc, unchanged, puts it back in its index.
                    other.append(self._save_job(raw, job, job.id, job.kind, batched=True))
                    continue
                if kinds is not None and job.kind not in kinds:
                    other.append(self._park(raw, job, score))
                    continue
                tries.append((raw, job, rules.lease_or_bury(job, now, owner, visibility)))
            # The messages the jobs are about, read behind the leases in the same round
            # trip: the handler's first look (``message_of_job``) then costs none.
            about = [job for _, job, ok in tries if ok and "message_id" in job.payload]
            keys = [self._k("msg", str(job.payload["message_id"])) for job in about]
            done: list[Any] = await asyncio.gather(
                *(self._save_job(raw, job, job.id, job.kind, batched=True)
                  for raw, job, _ in tries),
                *other,
                self._read_many(keys) if keys else asyncio.sleep(0, []),
            )  # fmt: skip
            saved = done[: len(tries)]
            won = {job.id for (_, job, ok), w in zip(tries, saved, strict=True) if ok and w}
            for job, raw in zip(about, done[-1], strict=True):
                if job.id in won:
                    self._keep_lease_read(job.id, raw)
            leased += [job for _, job, _ in tries if job.id in won]
        return leased

    async def _holding(self, job_id: str, token: str) -> tuple[str, Job] | None:
        raw = await self._read(self._k("job", job_id))
        if raw is None:
            return None
        job = Job.from_dict(jsoncodec.loads(raw))
        return (raw, job) if job.state == "leased" and job.token == token else None

    async def renew_job(self, job_id: str, token: str, until: datetime) -> bool:
        """Extend the lease ``token`` holds to ``until``."""
        for _ in range(CAS_TRIES):
            if (held := await self._holding(job_id, token)) is None:
                return False
            raw, job = held
            job.lease_until = until
            if await self._save_job(raw, job, job_id, job.kind):
                return True
        raise RuntimeError(f"job {job_id}: too much contention")

    async def ack_job(self, job_id: str, token: str) -> bool:
        """Remove a finished job if ``token`` still holds its lease."""
        for _ in range(CAS_TRIES):
            if (held := await self._holding(job_id, token)) is None:
                return False
            if await self._save_job(held[0], None, job_id, held[1].kind, batched=True):
                return True
        raise RuntimeError(f"job {job_id}: too much contention")

    async def retry_job(
        self, job_id: str, token: str, run_at: datetime, error: str, refund: bool = False
    ) -> str | None:
        """Put a leased job back for ``run_at`` (or bury it after max attempts)."""
        for _ in range(CAS_TRIES):
            if (held := await self._holding(job_id, token)) is None:
                return None
            raw, job = held
            rules.schedule_retry(job, run_at, error, refund)
            if await self._save_job(raw, job, job_id, job.kind, batched=True):
                return job.state
        raise RuntimeError(f"job {job_id}: too much contention")

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""
        raw = await self._r.get(self._k("job", job_id))
        return Job.from_dict(jsoncodec.loads(raw)) if raw is not None else None

    async def _jobs(self, ids: list[Any]) -> list[Job]:
        raws = await self._r.mget([self._k("job", text(i)) for i in ids]) if ids else []
        return [Job.from_dict(jsoncodec.loads(raw)) for raw in raws if raw is not None]

    async def list_dead_jobs(self, limit: int) -> list[Job]:
        """Dead jobs, newest first."""
        key = self._k("jobs", "dead")
        ids = await self._r.zrange(key, "+", "-", desc=True, bylex=True, offset=0, num=limit)
        return await self._jobs(ids)

    async def _scan(self, key: str, kind: str | None, limit: int, dead: bool) -> list[Job]:
        """Up to ``limit`` jobs of ``kind`` from one index, in its order."""
        found: list[Job] = []
        start = 0
        while len(found) < limit:
            if dead:
                ids = await self._r.zrange(key, "+", "-", desc=True, bylex=True, offset=start,
                                           num=_SCAN)  # fmt: skip
            else:
                ids = await self._r.zrange(key, start, start + _SCAN - 1)
            jobs = await self._jobs(ids)
            found += [j for j in jobs if kind is None or j.kind == kind]
            if len(ids) < _SCAN:
                break
            start += _SCAN
        return found[:limit]

    async def list_jobs(self, state: str, kind: str | None, limit: int) -> list[Job]:
        """Jobs in ``state`` (parked ones count as ready), of ``kind`` if given."""
        if state == "dead":
            return await self._scan(self._k("jobs", "dead"), kind, limit, dead=True)
        found = await self._scan(self._k("jobs", state), kind, limit, dead=False)
        if state == "ready":
            kinds = [kind] if kind is not None else await self._parked_kinds()
            for k in kinds:
                found += await self._scan(self._parked(k), None, limit, dead=False)
            found.sort(key=lambda j: (j.run_at, j.id))
        return found[:limit]

    async def revive_job(self, job_id: str, now: datetime) -> Job | None:
        """Make a dead job ready again, due ``now``, with no attempts used."""
        for _ in range(CAS_TRIES):
            raw = await self._r.get(self._k("job", job_id))
            if raw is None:
                return None
            job = Job.from_dict(jsoncodec.loads(raw))
            if job.state != "dead":
                return None
            job.state, job.attempts, job.run_at = "ready", 0, now
            job.token = job.lease_until = None
            if await self._save_job(text(raw), job, job_id, job.kind):
                return job
        raise RuntimeError(f"job {job_id}: too much contention")

    async def job_counts(self) -> dict[str, int]:
        """Jobs per state (parked ones are ready)."""
        parked = await self._parked_kinds()
        async with self._r.pipeline(transaction=True) as pipe:
            for state in JOB_STATES:
                pipe.zcard(self._k("jobs", state))
            for kind in parked:
                pipe.zcard(self._parked(kind))
            counts = [int(n) for n in await pipe.execute()]
        result = dict(zip(JOB_STATES, counts, strict=False))
        result["ready"] += sum(counts[len(JOB_STATES) :])
        return result

    async def parked_job_counts(self) -> dict[str, int]:
        """Parked jobs by kind."""
        parked = await self._parked_kinds()
        async with self._r.pipeline(transaction=False) as pipe:
            for kind in parked:
                pipe.zcard(self._parked(kind))
            counts = await pipe.execute() if parked else []
        return {kind: int(n) for kind, n in zip(parked, counts, strict=True) if int(n)}
