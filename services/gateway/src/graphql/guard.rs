//! The one place a GraphQL field decides who may use it: [`Need`] guards every root field (and
//! the nested fields that reach into another permission) with the `getlood_auth::Permission` the
//! REST route of the same operation needs, and a mutation with the rate-limit class of that
//! route. Errors leave as GraphQL errors whose `extensions.code` is the platform's error code.

use async_graphql::{Context, ErrorExtensions as _, Guard};
use getlood_auth::Permission;
use getlood_common::{ApiError, ErrorCode};

use crate::AppState;
use crate::caller::Caller;
use crate::rate_limit::{RouteClass, Verdict, class_verdict};

/// A GraphQL error from an API error: the same code and message REST would answer with, the code
/// under `extensions.code` (plus `retry_after` seconds for a rate-limit refusal).
pub(crate) fn gql_error(err: ApiError) -> async_graphql::Error {
    async_graphql::Error::new(err.message).extend_with(|_, ext| ext.set("code", err.code.as_str()))
}

/// The caller of the request or socket the field runs for; every GraphQL request carries one
/// (the route is behind `require_auth`), so its absence is a wiring bug refused as such.
pub(crate) fn caller<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Caller> {
    ctx.data::<Caller>().map_err(|_| gql_error(ApiError::new(ErrorCode::Unauthenticated, "authentication is required")))
}

/// The gateway's state, which the schema carries.
pub(crate) fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AppState> {
    ctx.data::<AppState>().map_err(|_| gql_error(ApiError::new(ErrorCode::Internal, "internal error")))
}

/// What a field needs: a permission, and for a mutation the rate-limit class of its REST route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    permission: Permission,
    class: Option<RouteClass>,
}

impl Need {
    /// A field the caller's roles must grant `permission` for.
    pub(crate) const fn to(permission: Permission) -> Self {
        Self { permission, class: None }
    }

    /// A mutation: `permission`, then one request of `class` from the caller's budget, as the REST
    /// route of the same write counts (`RouteClass::of`).
    pub(crate) const fn write(permission: Permission, class: RouteClass) -> Self {
        Self { permission, class: Some(class) }
    }
}

impl Guard for Need {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let caller = caller(ctx)?;
        if let Err(err) = getlood_auth::require(&caller.principal().roles, self.permission) {
            tracing::info!(field = %ctx.field().name(), permission = %self.permission, "graphql field refused: permission denied");
            return Err(gql_error(err));
        }
        let Some(class) = self.class else { return Ok(()) };
        match class_verdict(&state(ctx)?.limiter, class, caller.principal()).await {
            Verdict::Proceed(_) => Ok(()),
            Verdict::Refuse(err, decision) => {
                let retry_after = decision.map(|d| d.retry_after_secs);
                Err(gql_error(err).extend_with(|_, ext| {
                    if let Some(secs) = retry_after {
                        ext.set("retry_after", secs);
                    }
                }))
            }
        }
    }
}
