"""The payment router: fee schedules, policies, the pure decision, the Router on real actors."""
