//! A private GNU Mailman 3 core on loopback, for the importer's tests (being built).
