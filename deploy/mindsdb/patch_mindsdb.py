"""GETLOOD's patches of MindsDB 26.1.0, shared by scripts/mindsdb.sh (dev venv) and
deploy/mindsdb/Dockerfile (the image compose and the Helm chart run).

    python patch_mindsdb.py            apply the patches (idempotent); exit 1 if a text is not found
    python patch_mindsdb.py --check    exit 0 when the installed MindsDB is patched, 1 otherwise

Run it with the interpreter of the environment MindsDB is installed in; it patches the packages
that interpreter would import (located with importlib, nothing is imported or executed). Each
patch is an exact-text replacement on the pinned versions, idempotent, and a loud failure if its
text is not found (another version needs the patch reviewed, not applied blindly).

1. Scheduler. MindsDB 26.1's job scheduler polls only the jobs of its own (default) company:
   JobsExecutor.get_next_tasks filters `db.Jobs.company_id == ctx.company_id`, and the scheduler
   process runs with the default company. GETLOOD puts every tenant in its own company
   (`company-id` header), so without this patch tenant jobs are stored but never run. The patch
   drops that one filter (and the user filter that follows it); each job still executes inside
   its own company and user, because execute_task_local sets ctx.company_id/user_id from the job
   record.

2. One HTTP client per thread for agents' models. pydantic_ai (which MindsDB's agents use) keeps
   one process-wide httpx.AsyncClient per provider (`_cached_async_http_client`, a
   functools.cache). MindsDB serves each request on its own thread with its own event loop, so
   two agent calls at once share connections across event loops: one fails with "Connection
   error." (`RuntimeError: ... is bound to a different event loop` underneath) and sometimes one
   never returns. Seen here with four concurrent agent creations through GETLOOD's registry:
   400 "model could not be reached" for a model that answered the others, and a creation that
   hung until the gateway's 25 s deadline. The patch keeps the cache, per thread: calls on one
   thread run one after another, so its client is never used by two loops at once.

3. Long-lived objects frozen out of the garbage collector. MindsDB's HTTP process imports pandas,
   langchain, pydantic_ai and the integrations before it serves, and more at its first agent
   answers: a heap of a few million objects that live as long as the process. CPython's full
   (generation 2) collection walks all of them each time. Under agent load (the fairness bench,
   2026-12-07, timed with a gc.callbacks hook) it ran every 15-25 s and took 320-410 ms: 350 ms
   in which every tenant's agent answer stalls, the whole of another tenant's p99. The patch runs
   one collection and gc.freeze() just before the server starts, as CPython's documentation
   advises for a long-lived server after its imports: full collections then took 80-100 ms,
   every 5-12 s (what the first answers import was still scanned). So the first five full
   collections after the start freeze what survived them too; after that no collection took
   more than 10 ms in the same bench. Frozen objects are never collected: what the first
   collections' survivors would later leave as cyclic garbage stays (they are modules, classes
   and caches, which live as long as the process anyway).
"""

import importlib.util
import os
import sys


class Patch:
    """One exact-text replacement in one file of an installed package."""

    def __init__(self, name, package, relpath, mark, old, new):
        self.name, self.package, self.relpath, self.mark, self.old, self.new = name, package, relpath, mark, old, new

    def path(self) -> str:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            sys.exit(f"{self.name} patch: {self.package} is not installed for {sys.executable}")
        for root in spec.submodule_search_locations:
            path = os.path.join(root, *self.relpath.split("/"))
            if os.path.isfile(path):
                return path
        sys.exit(f"{self.name} patch: {self.package}/{self.relpath} not found")

    def applied(self) -> bool:
        with open(self.path()) as f:
            return self.mark in f.read()

    def apply(self) -> None:
        path = self.path()
        with open(path) as f:
            src = f.read()
        if self.mark in src:
            return
        if src.count(self.old) != 1:
            sys.exit(f"{self.name} patch: expected text not found in {path}")
        with open(path, "w") as f:
            f.write(src.replace(self.old, self.new))
        print(f"{self.name} patch: applied to {path}", file=sys.stderr)


SCHEDULER_MARK = "# getlood: scheduler polls every company"
HTTP_CLIENT_MARK = "# getlood: one http client per thread"
GC_FREEZE_MARK = "# getlood: long-lived objects frozen out of the collector"

PATCHES = [
    Patch(
        "scheduler",
        "mindsdb",
        "interfaces/jobs/jobs_controller.py",
        SCHEDULER_MARK,
        "            db.Jobs.active == True,  # noqa\n"
        "            db.Jobs.company_id == ctx.company_id,\n"
        "        ]\n"
        "        if ctx.enforce_user_id:\n"
        "            filters.append(db.Jobs.user_id == ctx.user_id)\n"
        "        query = db.session.query(db.Jobs).filter(*filters).order_by(db.Jobs.next_run_at)",
        "            db.Jobs.active == True,  # noqa\n"
        "            " + SCHEDULER_MARK + "\n"
        "        ]\n"
        "        query = db.session.query(db.Jobs).filter(*filters).order_by(db.Jobs.next_run_at)",
    ),
    Patch(
        "http client",
        "pydantic_ai",
        "models/__init__.py",
        HTTP_CLIENT_MARK,
        "@cache\ndef _cached_async_http_client(\n",
        "def _getlood_per_thread_cache(fn):  " + HTTP_CLIENT_MARK + "\n"
        "    import threading\n"
        "\n"
        "    local = threading.local()\n"
        "\n"
        "    def wrapper(*args, **kwargs):\n"
        "        cache = local.__dict__.setdefault('clients', {})\n"
        "        key = (args, tuple(sorted(kwargs.items())))\n"
        "        if key not in cache:\n"
        "            cache[key] = fn(*args, **kwargs)\n"
        "        return cache[key]\n"
        "\n"
        "    wrapper.cache_clear = lambda: local.__dict__.setdefault('clients', {}).clear()\n"
        "    return wrapper\n"
        "\n"
        "\n"
        "@_getlood_per_thread_cache\ndef _cached_async_http_client(\n",
    ),
    Patch(
        "gc freeze",
        "mindsdb",
        "api/http/start.py",
        GC_FREEZE_MARK,
        "    # Setting logging to None makes uvicorn use the existing logging configuration\n    uvicorn.run(\n",
        "    " + GC_FREEZE_MARK + "\n"
        "    gc.collect()\n"
        "    gc.freeze()\n"
        "    getlood_warm_freezes = [5]\n"
        "\n"
        "    def getlood_freeze_survivors(phase, info):\n"
        "        if phase == 'stop' and info['generation'] == 2 and getlood_warm_freezes[0] > 0:\n"
        "            getlood_warm_freezes[0] -= 1\n"
        "            gc.freeze()\n"
        "\n"
        "    gc.callbacks.append(getlood_freeze_survivors)\n"
        "\n"
        "    # Setting logging to None makes uvicorn use the existing logging configuration\n    uvicorn.run(\n",
    ),
]


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if check:
        return 0 if all(p.applied() for p in PATCHES) else 1
    for patch in PATCHES:
        patch.apply()
    return 0


if __name__ == "__main__":
    sys.exit(main())
