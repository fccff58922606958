-- Built-in accounts (issue 16): for installs without an OIDC provider, the gateway keeps the
-- tenants that signed up, their users (argon2id password hashes), and the keys it signs their
-- tokens with. Every replica reads the same rows, so any replica verifies and publishes them.

-- One row per tenant created by a sign-up; its first user is its admin.
CREATE TABLE tenants (
    id          text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A user of one tenant. Emails are unique across tenants (sign-in names no tenant) and stored
-- lower-cased, so 'Alice@x' and 'alice@x' are one account.
CREATE TABLE users (
    id             uuid        PRIMARY KEY,
    tenant_id      text        NOT NULL REFERENCES tenants (id),
    email          text        NOT NULL UNIQUE,
    -- PHC string of argon2id (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    password_hash  text        NOT NULL,
    roles          text[]      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX users_by_tenant ON users (tenant_id, created_at);

-- The gateway's token signing keys (ES256, P-256). The newest key whose activates_at has passed
-- signs; every key not retired is published at /.well-known/jwks.json, so a key added by a
-- rotation is published before any replica signs with it and an older key keeps verifying the
-- tokens it signed until they expire.
CREATE TABLE signing_keys (
    kid             text        PRIMARY KEY,
    algorithm       text        NOT NULL,
    -- The public key as a JWK (kty, crv, x, y), published as is plus kid/alg/use.
    public_jwk      jsonb       NOT NULL,
    -- PKCS#8 DER of the private key: ChaCha20-Poly1305 ciphertext under the configured
    -- key-encryption key (`encrypted`), else the plain DER (a deployment without one is warned).
    private_key     bytea       NOT NULL,
    nonce           bytea,
    encrypted       boolean     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activates_at    timestamptz NOT NULL,
    -- Set when the key stops being published: no token it signed can still be valid.
    retired_at      timestamptz
);
