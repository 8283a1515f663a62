"""Legacy text completions (`/v1/completions`): passed through or bridged over chat."""
