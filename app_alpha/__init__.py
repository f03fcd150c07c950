"""Alpha, a game: players win credits and pay entry fees."""
