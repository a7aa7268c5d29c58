"""Wiring and operations around the core: the aiohttp application that plugs the channels,
the handoff module and the flows into the gateway core (`app`), the command line
(`python -m gateway`, run by ./aftersales), the Rasa processes (`rasa_runtime`) and the
shopper data commands (`privacy`). The only layer that imports every package."""
