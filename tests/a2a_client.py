"""The gateway's A2A server through the official `a2a-sdk` PyPI client (pinned in
scripts/install-deploy-tools.sh), run by tests/a2a.rs:

    .tools/venv/bin/python tests/a2a_client.py --base http://127.0.0.1:PORT/a2a/helper \
        --token JWT --other-token JWT_OF_ANOTHER_TENANT --question "..." --expect "..." \
        --slow "SLOW-QUESTION" --slow-expect "..." --push-url http://127.0.0.1:PORT/sdk

It resolves the agent's card, sends a message (blocking) and a streaming message and checks the
answers, gets and lists the tasks, cancels a running task, drops a stream early and resubscribes
to the still running task until it completes, sets, reads, lists and deletes push-notification
configs of a running task (its webhook, the test's, checks the notifications: this script prints
'push task: <id>'), and checks that another tenant's token gets TaskNotFoundError for every one
of those tasks and configs. Prints 'a2a client check: ok' when every check passed.
"""

import argparse
import asyncio
import sys
import uuid

import httpx
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import (
    AuthenticationInfo,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def message(text):
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


def http_client(token):
    return httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30.0, read=120.0))


async def client_for(base, token, streaming):
    config = ClientConfig(streaming=streaming, httpx_client=http_client(token))
    return await create_client(
        base, client_config=config, resolver_http_kwargs={"headers": {"Authorization": f"Bearer {token}"}}
    )


def answer_of(task):
    return "".join(p.text for a in task.artifacts for p in a.parts)


async def main(args):
    # The card, at the agent's base path.
    async with http_client(args.token) as http:
        card = await A2ACardResolver(http, args.base).get_agent_card()
    check(card.name == "helper", f"card resolved: {card.name}")
    check(card.capabilities.streaming and card.capabilities.push_notifications, "card capabilities")
    check(card.supported_interfaces[0].url == args.base, "card interface url")
    check(len(card.skills) >= 1, "card skills")
    check("bearer" in card.security_schemes, "card bearer scheme")

    tasks = []
    # A message, blocking.
    client = await client_for(args.base, args.token, streaming=False)
    events = [e async for e in client.send_message(SendMessageRequest(message=message(args.question)))]
    task = events[-1].task
    check(task.status.state == TaskState.TASK_STATE_COMPLETED, f"message answered: {task.status.state}")
    check(answer_of(task) == args.expect, f"answer artifact: {answer_of(task)!r}")
    tasks.append(task.id)
    got = await client.get_task(GetTaskRequest(id=task.id))
    check(got.id == task.id and answer_of(got) == args.expect, "task read back")
    listed = await client.list_tasks(ListTasksRequest(context_id=task.context_id))
    check([t.id for t in listed.tasks] == [task.id], "tasks listed by context")

    # A streaming message: task, status updates, artifact chunks, completed.
    stream_client = await client_for(args.base, args.token, streaming=True)
    kinds, text, final = [], "", None
    async for event in stream_client.send_message(SendMessageRequest(message=message(args.question))):
        kind = event.WhichOneof("payload")
        kinds.append(kind)
        if kind == "task":
            tasks.append(event.task.id)
        elif kind == "artifact_update":
            text += "".join(p.text for p in event.artifact_update.artifact.parts)
        elif kind == "status_update":
            final = event.status_update.status.state
    check(kinds[0] == "task" and "artifact_update" in kinds, f"stream events: {kinds}")
    check(text == args.expect, f"streamed answer: {text!r}")
    check(final == TaskState.TASK_STATE_COMPLETED, f"stream ended completed: {final}")

    # Cancel a running task.
    polling = await create_client(
        args.base,
        client_config=ClientConfig(streaming=False, polling=True, httpx_client=http_client(args.token)),
        resolver_http_kwargs={"headers": {"Authorization": f"Bearer {args.token}"}},
    )
    events = [e async for e in polling.send_message(SendMessageRequest(message=message(args.slow)))]
    running = events[-1].task
    check(running.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING), "task running")
    tasks.append(running.id)
    canceled = await client.cancel_task(CancelTaskRequest(id=running.id))
    check(canceled.status.state == TaskState.TASK_STATE_CANCELED, f"task canceled: {canceled.status.state}")
    try:
        await client.cancel_task(CancelTaskRequest(id=running.id))
        check(False, "a canceled task cannot be canceled again")
    except TaskNotCancelableError:
        check(True, "a canceled task cannot be canceled again")

    # Drop a stream after its first event, then resubscribe until the task completes.
    dropped = None
    async for event in stream_client.send_message(SendMessageRequest(message=message(args.slow))):
        if event.WhichOneof("payload") == "task":
            dropped = event.task.id
            break
    check(dropped is not None, "stream dropped after the task event")
    tasks.append(dropped)
    resumed_text, resumed_final, first = "", None, None
    async for event in stream_client.subscribe(SubscribeToTaskRequest(id=dropped)):
        kind = event.WhichOneof("payload")
        first = first or kind
        if kind == "task":
            resumed_text = answer_of(event.task)
        elif kind == "artifact_update":
            resumed_text += "".join(p.text for p in event.artifact_update.artifact.parts)
        elif kind == "status_update":
            resumed_final = event.status_update.status.state
    check(first == "task", f"resubscription starts with the task: {first}")
    check(resumed_final == TaskState.TASK_STATE_COMPLETED, f"resubscribed stream completed: {resumed_final}")
    check(resumed_text == args.slow_expect, f"resubscribed answer: {resumed_text!r}")
    done = await client.get_task(GetTaskRequest(id=dropped))
    check(answer_of(done) == args.slow_expect, "resubscribed task stored whole")

    # Push notifications: a webhook (with a token and bearer credentials) for a running task.
    events = [e async for e in polling.send_message(SendMessageRequest(message=message(args.slow)))]
    pushed = events[-1].task
    tasks.append(pushed.id)
    config = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(
            task_id=pushed.id,
            id="sdk-hook",
            url=args.push_url,
            token="sdk-token",
            authentication=AuthenticationInfo(scheme="Bearer", credentials="sdk-cred"),
        )
    )
    check(config.id == "sdk-hook" and config.task_id == pushed.id and config.url == args.push_url, "push config set")
    check(config.token == "sdk-token" and config.authentication.scheme == "Bearer", "push config token and scheme")
    check(not config.authentication.credentials, "push config credentials are write-only")
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=pushed.id, id="sdk-hook")
    )
    check(got.url == args.push_url and got.token == "sdk-token", "push config read back")
    await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=pushed.id, id="sdk-temp", url=args.push_url + "/temp")
    )
    listed = await client.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=pushed.id))
    check([c.id for c in listed.configs] == ["sdk-hook", "sdk-temp"], f"push configs listed: {listed.configs}")
    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=pushed.id, id="sdk-temp")
    )
    try:
        await client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=pushed.id, id="sdk-temp")
        )
        check(False, "a deleted push config is gone")
    except TaskNotFoundError:
        check(True, "a deleted push config is gone")
    for _ in range(300):
        done = await client.get_task(GetTaskRequest(id=pushed.id))
        if done.status.state == TaskState.TASK_STATE_COMPLETED:
            break
        await asyncio.sleep(0.1)
    check(done.status.state == TaskState.TASK_STATE_COMPLETED, f"pushed task completed: {done.status.state}")
    print(f"push task: {pushed.id}")

    # Another tenant: not found, for every task of the first.
    other = await client_for(args.base, args.other_token, streaming=True)
    for task_id in tasks:
        for call in (
            lambda: other.get_task(GetTaskRequest(id=task_id)),
            lambda: other.cancel_task(CancelTaskRequest(id=task_id)),
        ):
            try:
                await call()
                check(False, f"another tenant reached task {task_id}")
            except TaskNotFoundError:
                pass
        try:
            async for _ in other.subscribe(SubscribeToTaskRequest(id=task_id)):
                check(False, f"another tenant subscribed to task {task_id}")
        except TaskNotFoundError:
            pass
    for call in (
        lambda: other.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=pushed.id, url=args.push_url + "/intruder")
        ),
        lambda: other.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=pushed.id, id="sdk-hook")
        ),
        lambda: other.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=pushed.id)),
        lambda: other.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=pushed.id, id="sdk-hook")
        ),
    ):
        try:
            await call()
            check(False, "another tenant reached a push config")
        except TaskNotFoundError:
            pass
    check(True, "another tenant gets not-found for every push config method")
    listed = await other.list_tasks(ListTasksRequest())
    check(len(listed.tasks) == 0, "another tenant lists none of them")
    check(True, f"another tenant gets not-found for all {len(tasks)} tasks")
    for c in (client, stream_client, polling, other):
        await c.close()
    print("a2a client check: ok")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("--base", "--token", "--other-token", "--question", "--expect", "--slow", "--slow-expect", "--push-url"):
        parser.add_argument(name, required=True)
    asyncio.run(main(parser.parse_args()))
