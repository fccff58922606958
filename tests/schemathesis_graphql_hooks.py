"""Schemathesis hooks for its GraphQL mode over the gateway's /graphql (tests/public_clients.rs,
loaded through SCHEMATHESIS_HOOKS; schemathesis pinned at 4.32.5 in
scripts/install-deploy-tools.sh).

* The `JSON` scalar (workflow graphs, run inputs, window props) gets values: Schemathesis has no
  strategy for custom scalars and skips those operations otherwise.
* The gateway labels every GraphQL error with `extensions.code`, the platform's error code
  (libs/common ErrorCode, the same words as REST's `code`). Schemathesis trusts labelled errors
  but knows only Apollo's and graphql-java's labels: without these, every refusal of bad input
  (`invalid_argument`, `not_found`...) would count as a "GraphQL server error". The codes of the
  server's own failures (`internal`, `unavailable`, `deadline_exceeded`) stay server errors: the
  GraphQL counterpart of a 5xx, which the test must not see.
"""

import graphql
from hypothesis import strategies as st

import schemathesis
from schemathesis.specs.graphql import validation

CLIENT_CODES = {
    "invalid_argument",
    "unauthenticated",
    "permission_denied",
    "not_found",
    "already_exists",
    "aborted",
    "failed_precondition",
    "resource_exhausted",
    "payload_too_large",
    "unimplemented",
}
SERVER_CODES = {"internal", "unavailable", "deadline_exceeded"}

validation.CLIENT_ERROR_MARKERS = validation.CLIENT_ERROR_MARKERS | CLIENT_CODES
validation.SERVER_ERROR_MARKERS = validation.SERVER_ERROR_MARKERS | SERVER_CODES


def _object(fields):
    return graphql.ObjectValueNode(
        fields=tuple(
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v) for k, v in fields.items()
        )
    )


_leaf = st.one_of(
    st.text(max_size=20).map(lambda s: graphql.StringValueNode(value=s)),
    st.integers(-1000, 1000).map(lambda n: graphql.IntValueNode(value=str(n))),
    st.booleans().map(lambda b: graphql.BooleanValueNode(value=b)),
    st.just(graphql.NullValueNode()),
)
_key = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_json = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda vs: graphql.ListValueNode(values=tuple(vs))),
        st.dictionaries(_key, inner, max_size=3).map(_object),
    ),
    max_leaves=8,
)

schemathesis.graphql.scalar("JSON", _json)
