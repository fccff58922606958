-- The agent's model API key, kept so the registry can put a MindsDB agent back when MindsDB has
-- lost it (its storage reset under a kept Postgres: a new volume, a new MindsDB). Sealed with
-- ChaCha20-Poly1305 under app.key_encryption_key, bound to the tenant and the agent, when that
-- key is set; in clear otherwise (the service warns at start). Never returned by the API nor
-- cached. Agents written before this column have NULL here: they cannot be put back silently.
ALTER TABLE agents
    ADD COLUMN api_key        text,
    ADD COLUMN api_key_sealed boolean NOT NULL DEFAULT false;
