"""Deep content inspection: refuses booby-trapped documents after staging, before publishing."""
