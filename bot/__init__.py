"""The gateway core: the message model and channel interfaces, the plugin contract, the
conversation service, the Rasa client, durable intake, transcripts, language, texts,
settings, serving and sealing. It imports nothing that plugs into it (gateway/ wires it)."""
