"""Beta, a shop: customers earn referral bonuses and pay for purchases."""
