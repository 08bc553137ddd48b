//! A tracker server (`bitpeer tracker`): HTTP and UDP announce and scrape, bounded memory.
