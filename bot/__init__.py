"""The gateway core: config, the normalized message model, conversation routing, the Rasa
client, the CLI and the aiohttp app that hosts every channel."""
