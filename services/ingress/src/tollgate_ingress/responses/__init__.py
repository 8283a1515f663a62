"""OpenAI's Responses API: the bridge over chat completions, native pass-through, and the
shared response state that makes `previous_response_id` work at once on any replica."""
