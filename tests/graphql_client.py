"""The gateway's GraphQL endpoint through a real GraphQL client, `gql` (PyPI, pinned in
scripts/install-deploy-tools.sh), run by tests/graphql.rs:

    .tools/venv/bin/python tests/graphql_client.py --url http://127.0.0.1:PORT/graphql \
        --token JWT --approver JWT --stranger JWT

`--token` is a builder and operator of a tenant, `--approver` another operator of the same tenant
(a run's starter may not approve it), `--stranger` an admin of another tenant. Over HTTP (aiohttp,
the schema fetched by introspection so every document is validated by the client first): queries,
the mutations that create a workflow and start a run of it; over the WebSocket
(graphql-transport-ws): a runEvents subscription opened while the run waits at its approval node,
which must receive the node events of the approval given after it opened, live, up to
run.completed; then the run list with every run's node timeline, another tenant's run not found,
and no token refused with 401. Prints 'graphql client check: ok' when every check passed.
"""

import argparse
import asyncio
import sys
import time
from contextlib import aclosing

from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.websockets import WebsocketsTransport

GRAPH = {
    "nodes": [
        {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
        {"id": "gate", "type": "human_approval", "data": {"message": "go?"}, "position": {"x": 200, "y": 0}},
        {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
    ],
    "edges": [
        {"id": "e1", "source": "start", "target": "gate"},
        {"id": "e2", "source": "gate", "target": "end", "sourceHandle": "approved"},
    ],
}

ME = gql("query { me { tenant user roles } }")
CREATE = gql("mutation($g: JSON!) { createWorkflow(name: \"approval\", graph: $g) { id version } }")
EXECUTE = gql("mutation($id: String!) { executeWorkflow(id: $id, input: {n: 1}) { id status } }")
RUN = gql("query($id: String!) { run(id: $id) { id status nodes { nodeId status } } }")
APPROVE = gql(
    "mutation($r: String!) { approveNode(runId: $r, nodeId: \"gate\", approved: true, comment: \"ok\") { id status } }"
)
RUN_EVENTS = gql("subscription($r: String!) { runEvents(runId: $r) { cursor type event } }")
RUNS = gql(
    "query($w: String!) { workflow(id: $w) { name runs(pageSize: 10) { items { id status nodes { nodeId status } } } } }"
)


def http_client(url, token, schema=True):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = AIOHTTPTransport(url=url, headers=headers, timeout=30)
    return Client(transport=transport, fetch_schema_from_transport=schema, execute_timeout=30)


def check(cond, message):
    if not cond:
        raise AssertionError(message)


async def wait_status(session, run_id, status):
    deadline = time.monotonic() + 20
    while True:
        run = (await session.execute(RUN, variable_values={"id": run_id}))["run"]
        if run["status"] == status:
            return run
        check(time.monotonic() < deadline, f"run {run_id} never reached {status}: {run}")
        await asyncio.sleep(0.1)


async def main(args):
    async with http_client(args.url, args.token) as session:
        me = (await session.execute(ME))["me"]
        check(me["user"] and "builder" in me["roles"], f"me: {me}")
        created = (await session.execute(CREATE, variable_values={"g": GRAPH}))["createWorkflow"]
        workflow = created["id"]
        run_id = (await session.execute(EXECUTE, variable_values={"id": workflow}))["executeWorkflow"]["id"]
        await wait_status(session, run_id, "waiting_approval")

        # The subscription opens while the run waits; the approval comes after its first event,
        # so the gate's and end's node events can only arrive live.
        ws_url = args.url.replace("http://", "ws://", 1)
        socket = WebsocketsTransport(
            url=ws_url,
            headers={"Authorization": f"Bearer {args.token}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        received, approved_at = [], None
        async with Client(transport=socket) as ws:
            stream = ws.subscribe(RUN_EVENTS, variable_values={"r": run_id})
            # aclosing: leaving the loop ends the subscription now (the client sends `complete`),
            # not when the generator is collected.
            async with asyncio.timeout(30), aclosing(stream):
                async for result in stream:
                    event = result["runEvents"]
                    received.append((event["type"], event["event"], len(received)))
                    if approved_at is None:
                        async with http_client(args.url, args.approver, schema=False) as approver:
                            decided = await approver.execute(APPROVE, variable_values={"r": run_id})
                        check(decided["approveNode"]["id"] == run_id, f"approve: {decided}")
                        approved_at = len(received)
                    if event["type"] == "run.completed":
                        break
            closing = time.monotonic()
        closed_in = time.monotonic() - closing
        kinds = [k for k, _, _ in received]
        check(kinds and kinds[0] == "run.started", f"first event: {kinds}")
        check(kinds[-1] == "run.completed", f"last event: {kinds}")
        live = [(k, e) for k, e, i in received if i >= approved_at]
        live_nodes = {e["data"]["node_id"] for k, e in live if k == "node.completed"}
        check({"gate", "end"} <= live_nodes, f"node events after the approval: {live}")
        check(kinds.count("run.completed") == 1, f"events: {kinds}")

        done = await wait_status(session, run_id, "succeeded")
        check([n["nodeId"] for n in done["nodes"]] == ["start", "gate", "end"], f"run: {done}")
        runs = (await session.execute(RUNS, variable_values={"w": workflow}))["workflow"]["runs"]["items"]
        check([r["id"] for r in runs] == [run_id] and len(runs[0]["nodes"]) == 3, f"runs: {runs}")

    # Another tenant's run: a GraphQL error with code not_found, no data.
    async with http_client(args.url, args.stranger) as stranger:
        try:
            await stranger.execute(RUN, variable_values={"id": run_id})
            check(False, "another tenant read the run")
        except TransportQueryError as err:
            check(err.errors[0]["extensions"]["code"] == "not_found", f"stranger: {err.errors}")

    # No token: the endpoint's plain 401.
    try:
        async with http_client(args.url, None, schema=False) as anonymous:
            await anonymous.execute(ME)
        check(False, "answered without a token")
    except TransportServerError as err:
        check(err.code == 401, f"no token: {err}")

    print(f"events received: {kinds}; the socket closed in {closed_in:.2f} s")
    print("graphql client check: ok")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--url", "--token", "--approver", "--stranger"):
        parser.add_argument(name, required=True)
    try:
        asyncio.run(main(parser.parse_args()))
    except Exception as err:  # noqa: BLE001 - the test prints whatever failed
        print(f"graphql client check failed: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
