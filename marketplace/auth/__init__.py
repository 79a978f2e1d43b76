"""Principals (sellers, buyers, platform admins), bearer tokens stored as hashes, guards, ownership."""
