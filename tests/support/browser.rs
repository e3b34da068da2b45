//! Headless Chromium driven over WebDriver, for the pages' tests (being built).
