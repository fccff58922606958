"""The gateway's MCP server through the official `mcp` PyPI client (pinned in
scripts/install-deploy-tools.sh), run by tests/mcp.rs:

    .tools/venv/bin/python tests/mcp_client.py --url http://127.0.0.1:PORT/mcp --token JWT \
        --agent helper --question "..." --expect "..." --workflow WORKFLOW_ID \
        --knowledge-base docs --kb-query "..." --kb-expect DOCUMENT_ID

In both of the client's modes ('auto': the 2026-07-28 stateless revision after its
server/discover probe; 'legacy': the initialize handshake with an Mcp-Session-Id session) it lists
tools and resources, reads the workflow and knowledge-base resources, calls ask_<agent> with a
progress callback and checks the answer and that progress notifications arrived, and calls
search_knowledge_base and checks the best hit; then it checks that a client without a token is
refused. Prints 'mcp client check: ok' when every check passed.
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def transport(url, token, statuses=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def record(response):
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx2.AsyncClient(
        headers=headers, timeout=httpx2.Timeout(30.0, read=120.0), event_hooks={"response": [record]}
    )
    return streamable_http_client(url, http_client=http)


async def check_mode(args, mode):
    async with Client(transport(args.url, args.token), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        ask = f"ask_{args.agent}"
        for name in (ask, "start_workflow", "read_run", "search_knowledge_base"):
            assert name in tools, f"[{mode}] tool {name} missing from {sorted(tools)}"
        assert tools[ask].input_schema["required"] == ["question"], tools[ask].input_schema

        resources = (await client.list_resources()).resources
        uri = f"getlood://workflows/{args.workflow}"
        assert any(str(r.uri) == uri for r in resources), f"[{mode}] {uri} not in {[str(r.uri) for r in resources]}"
        read = await client.read_resource(uri)
        workflow = json.loads(read.contents[0].text)
        assert workflow["id"] == args.workflow, workflow
        kb_uri = f"getlood://knowledge-bases/{args.knowledge_base}"
        assert any(str(r.uri) == kb_uri for r in resources), f"[{mode}] {kb_uri} not in {[str(r.uri) for r in resources]}"
        kb = json.loads((await client.read_resource(kb_uri)).contents[0].text)
        assert kb["name"] == args.knowledge_base, kb

        found = await client.call_tool(
            "search_knowledge_base", {"knowledge_base": args.knowledge_base, "query": args.kb_query, "top_k": 2}
        )
        assert not found.is_error, f"[{mode}] search failed: {found.content}"
        hits = found.structured_content["hits"]
        assert hits and hits[0]["document_id"] == args.kb_expect, f"[{mode}] hits {hits}"

        progress = []

        async def on_progress(value, total, message):
            progress.append((value, message))

        result = await client.call_tool(ask, {"question": args.question}, progress_callback=on_progress)
        assert not result.is_error, f"[{mode}] ask failed: {result.content}"
        text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        assert args.expect in text, f"[{mode}] answer {text!r} lacks {args.expect!r}"
        assert result.structured_content["agent"] == args.agent, result.structured_content
        assert progress, f"[{mode}] no progress notification arrived"
        values = [v for v, _ in progress]
        assert values == sorted(values) and len(set(values)) == len(values), f"progress must increase: {values}"
        streamed = "".join(m or "" for _, m in progress if m != "working")
        print(f"[{mode}] protocol {client.protocol_version}: {len(tools)} tools, {len(resources)} resources, "
              f"{len(progress)} progress notifications, streamed {len(streamed)} chars, {len(hits)} search hits")


async def check_refused_without_token(args):
    statuses = []
    try:
        async with Client(transport(args.url, None, statuses), mode="legacy") as client:
            await client.list_tools()
    except Exception as e:  # noqa: BLE001 - the refusal surfaces as an exception group or an MCP error
        # The client reports any 4xx as a generic error; the HTTP answers say why.
        assert statuses and set(statuses) == {401}, f"refused, but not by a 401: {statuses} ({e!r})"
        print(f"without a token: refused, HTTP {statuses}")
        return
    raise AssertionError("a client without a token was served")


async def main():
    parser = argparse.ArgumentParser()
    for name in ("url", "token", "agent", "question", "expect", "workflow", "knowledge-base", "kb-query", "kb-expect"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    for mode in ("auto", "legacy"):
        await check_mode(args, mode)
    await check_refused_without_token(args)
    print("mcp client check: ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as e:
        print(f"mcp client check failed: {e}", file=sys.stderr)
        sys.exit(1)
