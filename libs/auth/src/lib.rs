//! Who is calling: JWT bearer verification and the [`Principal`] it yields.
//!
//! The tenant of every request comes from here and nowhere else: services never read a tenant
//! from a request body or a client-set header. HS256 is for development; production deployments
//! configure RS256 or ES256 public keys of their OIDC provider.

mod config;
pub mod methods;
mod roles;
mod verifier;

pub use config::{AuthConfig, DEV_HS256_SECRET, PublicKeyConfig};
pub use getlood_common::{Principal, TenantId};
pub use roles::{Permission, Role, UnknownRole, allows, require};
pub use verifier::{AuthError, Claims, Verifier, dev_token};

/// The gRPC metadata / HTTP header that carries the bearer token between services.
pub const AUTHORIZATION: &str = "authorization";
