"""auth: customers' credentials (Argon2id hashes) and access token issue."""
