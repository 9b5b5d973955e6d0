"""Payment providers: signing, codecs, HTTP adapters, channel actors, callbacks, bills."""
