"""Test support: real certificates, real network peers, a running service."""
