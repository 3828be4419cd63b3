"""What every stage's command line shares: one error style, atomic files, default paths."""
