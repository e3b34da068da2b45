//! Digests: issues that collect a list's posts for the members who take them (RFC 1153 plain and MIME `multipart/digest`). Being built.
