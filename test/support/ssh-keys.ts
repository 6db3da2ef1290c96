/** A well-formed OpenSSH public key (a random Ed25519 one, no private half kept) for the renter commands' tests. */
export const RENTER_SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVnhlMas7YyM1M0V1GV+JZL30egIhRBlaFjDuz1uUz4 renter@laptop'
