//! SMTP re-injection client: hands copies of a post back to the MTA.
