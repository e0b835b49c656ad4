"""Paper reproduction reports: the claims-table layout (`claims`) and one module per paper."""
