"""Anthropic's Messages API (`/v1/messages`, as Claude Code and the Anthropic SDK call it)
bridged to the gateway's chat completions path."""
