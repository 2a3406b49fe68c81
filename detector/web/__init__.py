"""The HTTP face: the aiohttp app, the write API, the Statuspage v2 JSON and the status page."""
