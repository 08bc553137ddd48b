//! The tracker client: HTTP(S) (BEP 3, 23, 7, 48) and UDP (BEP 15) announces and scrapes, and multitracker tiers (BEP 12).
