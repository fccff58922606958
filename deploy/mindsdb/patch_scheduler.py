"""GETLOOD's patch of MindsDB 26.1.0's job scheduler, shared by scripts/mindsdb.sh (dev venv)
and deploy/mindsdb/Dockerfile (the image compose and the Helm chart run).

    python patch_scheduler.py            apply the patch (idempotent); exit 1 if the text is not found
    python patch_scheduler.py --check    exit 0 when the installed MindsDB is patched, 1 otherwise

Run it with the interpreter of the environment MindsDB is installed in; it patches the MindsDB
that interpreter would import (located with importlib, nothing is imported or executed).

Why: MindsDB 26.1's job scheduler polls only the jobs of its own (default) company:
JobsExecutor.get_next_tasks filters `db.Jobs.company_id == ctx.company_id`, and the scheduler
process runs with the default company. GETLOOD puts every tenant in its own company
(`company-id` header), so without this patch tenant jobs are stored but never run. The patch
drops that one filter (and the user filter that follows it); each job still executes inside its
own company and user, because execute_task_local sets ctx.company_id/user_id from the job
record. Exact-text replacement on the pinned version, idempotent, and a loud failure if the
text is not found (another MindsDB version needs the patch reviewed, not applied blindly).
"""

import importlib.util
import os
import sys

MARK = "# getlood: scheduler polls every company"

OLD = (
    "            db.Jobs.active == True,  # noqa\n"
    "            db.Jobs.company_id == ctx.company_id,\n"
    "        ]\n"
    "        if ctx.enforce_user_id:\n"
    "            filters.append(db.Jobs.user_id == ctx.user_id)\n"
    "        query = db.session.query(db.Jobs).filter(*filters).order_by(db.Jobs.next_run_at)"
)
NEW = (
    "            db.Jobs.active == True,  # noqa\n"
    "            " + MARK + "\n"
    "        ]\n"
    "        query = db.session.query(db.Jobs).filter(*filters).order_by(db.Jobs.next_run_at)"
)


def controller_path() -> str:
    """jobs_controller.py of the MindsDB this interpreter would import."""
    spec = importlib.util.find_spec("mindsdb")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scheduler patch: mindsdb is not installed for " + sys.executable)
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "interfaces", "jobs", "jobs_controller.py")
        if os.path.isfile(path):
            return path
    sys.exit("scheduler patch: mindsdb/interfaces/jobs/jobs_controller.py not found")


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    path = controller_path()
    with open(path) as f:
        src = f.read()
    if MARK in src:
        return 0
    if check:
        return 1
    if src.count(OLD) != 1:
        sys.exit("scheduler patch: expected text not found in " + path)
    with open(path, "w") as f:
        f.write(src.replace(OLD, NEW))
    print("scheduler patch: applied to " + path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
