"""The switch side: callbacks into the books, the HTTP app."""
