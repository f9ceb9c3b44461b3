package failure

func isQuota(error) bool { return false }
