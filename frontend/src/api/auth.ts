import { api } from './client';
import type { Invitation, Role as RoleType, User as UserType } from './types';

export type Role = RoleType;
export type User = UserType;

export interface Credentials {
  email: string;
  password: string;
}

export function fetchCsrf(): Promise<void> {
  return api.get<void>('/auth/csrf');
}

export function fetchMe(signal?: AbortSignal): Promise<User> {
  return api.get<User>('/auth/me', signal ? { signal } : undefined);
}

export function login(credentials: Credentials): Promise<User> {
  return api.post<User>('/auth/login', credentials);
}

export function logout(): Promise<void> {
  return api.post<void>('/auth/logout');
}

export function changePassword(body: { current_password: string; new_password: string }): Promise<void> {
  return api.post<void>('/auth/password', body);
}

export function fetchInvitation(token: string, signal?: AbortSignal): Promise<Invitation> {
  return api.get<Invitation>(`/auth/invitations/${encodeURIComponent(token)}`, signal ? { signal } : undefined);
}

export function acceptInvitation(
  token: string,
  body: { password: string; display_name?: string },
): Promise<User> {
  return api.post<User>(`/auth/invitations/${encodeURIComponent(token)}`, body);
}
