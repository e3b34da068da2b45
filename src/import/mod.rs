//! Importers: lists, settings and members from GNU Mailman 3 (REST) and mlmmj (list directories). Being built.
