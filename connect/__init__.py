"""Everything that talks to Stripe about money and accounts. Imports the stripe SDK, never our app."""
