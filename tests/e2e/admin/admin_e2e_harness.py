"""Constants shared by the admin e2e tests and their fixture."""

E2E_MASTER = "sk-admin-e2e-master-key-0123456789"
