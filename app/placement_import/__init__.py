"""Moving a cloud from Placement: import its database into allot, and verify the copy."""
