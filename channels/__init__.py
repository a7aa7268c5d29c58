"""Channel adapters: each translates one platform to and from `bot.messages`; no business logic."""
