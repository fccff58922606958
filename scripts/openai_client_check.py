#!/usr/bin/env python3
"""Talks to the GETLOOD gateway with the official `openai` client, streaming and not.

Used by the integration test `gateway_chat::openai_python_client_talks_to_the_gateway`; also
handy by hand: `scripts/openai_client_check.py --base-url http://127.0.0.1:8080/v1 --api-key $JWT`.
Exits non-zero with a message on the first mismatch.
"""

import argparse
import sys

import openai


def check(condition, message):
    if not condition:
        print(f"openai client check: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True, help="a GETLOOD bearer token")
    parser.add_argument("--model", default="getlood")
    parser.add_argument("--prompt", default="Crée-moi un dashboard analytics")
    parser.add_argument("--expect", default=None, help="exact answer text expected")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": args.prompt}]

    # Non-streaming.
    completion = client.chat.completions.create(model=args.model, messages=messages)
    answer = completion.choices[0].message.content
    check(completion.object == "chat.completion", f"object is {completion.object}")
    check(completion.choices[0].finish_reason == "stop", "finish_reason is not stop")
    check(answer, "empty answer")
    if args.expect is not None:
        check(answer == args.expect, f"answer {answer!r} != {args.expect!r}")
    check(completion.usage is not None and completion.usage.total_tokens >= 0, "no usage")
    extras = (completion.model_extra or {}).get("getlood")
    check(isinstance(extras, dict) and extras.get("intent"), f"no getlood extras: {extras!r}")

    # Streaming, with the usage chunk.
    stream = client.chat.completions.create(
        model=args.model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    parts, finish, usage, stream_extras = [], None, None, None
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.content:
                parts.append(delta.content)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
        stream_extras = (chunk.model_extra or {}).get("getlood") or stream_extras
    streamed = "".join(parts)
    check(streamed == answer, f"streamed {streamed!r} != non-streamed {answer!r}")
    check(finish == "stop", f"stream finish_reason {finish!r}")
    check(usage is not None, "no usage chunk")
    check(isinstance(stream_extras, dict), "no getlood extras in the stream")

    # The model list.
    models = [m.id for m in client.models.list()]
    check("getlood" in models, f"models {models!r}")

    # An unknown model is a 400 the client raises as BadRequestError.
    try:
        client.chat.completions.create(model="no_such_agent", messages=messages)
        check(False, "unknown model accepted")
    except openai.BadRequestError as err:
        check("does not exist" in str(err), f"unexpected message {err}")

    print(f"openai client check: ok (openai {openai.__version__}, {len(parts)} chunks, models {models})")


if __name__ == "__main__":
    main()
