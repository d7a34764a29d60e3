"""Model shapes from the paper, built in so benchmarks and tests need no data files.

Table 3 of Sun et al., "FM^2: Field-matrix Factorization Machines" (WWW 2021, CC-BY 4.0): per-field
embedding dims found by PCA at 95 percent variance on Criteo, and the number of features in each field.
"""

CRITEO_TABLE3_DIMS = (3, 8, 5, 7, 9, 8, 6, 5, 8, 3, 5, 3, 6, 8, 12, 2, 11, 5, 4, 14, 8, 2, 13, 14, 8, 13, 4, 14, 10, 6, 14, 12, 2, 9, 4, 6, 12, 7, 11)
CRITEO_FEATURES_PER_FIELD = (62, 113, 125, 50, 223, 147, 99, 78, 103, 8, 31, 56, 81, 1457, 555, 245195, 166164, 305, 18, 12054, 633, 3, 46329, 5228, 243452, 3176, 26, 11744, 225320, 10, 4726, 2056, 3, 238638, 16, 15, 67854, 87, 50940)
CRITEO_FIELD_NAMES = tuple(f"I{i}" for i in range(1, 14)) + tuple(f"C{i}" for i in range(1, 27))

# Avazu-like cardinalities for the 23 fields of the Avazu format (day_of_week, hour_of_day, then the
# 21 categorical columns); the paper reports only the 1.54M total, these follow the public data set.
AVAZU_FIELD_NAMES = ("day_of_week", "hour_of_day", "C1", "banner_pos", "site_id", "site_domain",
                     "site_category", "app_id", "app_domain", "app_category", "device_id", "device_ip",
                     "device_model", "device_type", "device_conn_type", "C14", "C15", "C16", "C17", "C18",
                     "C19", "C20", "C21")
AVAZU_FEATURES_PER_FIELD = (7, 24, 7, 7, 4737, 7745, 26, 8552, 559, 36, 291045, 1110599, 8251, 5, 4,
                            2626, 8, 9, 435, 4, 68, 172, 60)


def vocab_sizes(features_per_field) -> list[int]:
    """One extra row per field for the unknown feature."""
    return [f + 1 for f in features_per_field]
