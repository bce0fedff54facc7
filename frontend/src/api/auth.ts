import { api } from './client';

export type Role = 'designer' | 'reviewer' | 'operator';

export interface User {
  id: number;
  email: string;
  display_name: string;
  role: Role;
}

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
