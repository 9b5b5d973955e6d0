"""Payment providers: sans-IO signing and codecs, HTTP adapters, channel actors, callbacks, bills."""
