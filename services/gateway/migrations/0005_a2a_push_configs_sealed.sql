-- A2A push-notification credentials sealed at rest (issue 15): with
-- `app.accounts.key_encryption_key` set, a config's non-empty `token` and `auth_credentials` hold
-- base64 of a nonce and the ChaCha20-Poly1305 ciphertext (the signing keys' mechanism), bound to
-- the config's tenant, task, id and field. Rows stored before this, or without that setting,
-- keep plain text and say so here.
ALTER TABLE a2a_push_configs ADD COLUMN sealed boolean NOT NULL DEFAULT false;
