package notify

// Trust asks the user to trust this computer on the device: a device that was never paired
// (or was un-trusted) shows "Trust This Computer?" when Snapback pairs with it.
func Trust(d Device) Message {
	return Message{Kind: TrustRequested, UDID: d.UDID, Urgent: true,
		Title: "Tap Trust on " + d.Name + " and enter its passcode",
		Body:  "Snapback needs " + d.Name + " to trust this computer before it can back it up. Unlock it, tap Trust and enter the passcode.",
	}
}
